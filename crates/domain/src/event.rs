//! The audit trail: security events of an account, kept for a configured
//! time. Events never hold secrets: no password, token, key or code.

use crate::UserId;
use chrono::{DateTime, Utc};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

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

/// What happened, by its stable name in the API and storage (`signup`,
/// `api_key.new_network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, Display, EnumString, VariantArray)]
#[strum(serialize_all = "snake_case", parse_err_ty = UnknownEventKind, parse_err_fn = unknown_event_kind)]
#[non_exhaustive]
pub enum EventKind {
    /// An account was made.
    Signup,
    /// The e-mail address was proved.
    EmailVerified,
    /// A login succeeded (password, with 2FA if on, or OAuth).
    LoginSucceeded,
    /// A signed-in user proved who they are again, for sensitive actions.
    Reauthenticated,
    /// A login with the account's e-mail failed (`details.reason`).
    LoginFailed,
    /// Too many failed logins locked the account.
    LockedOut,
    /// An operator suspended the account.
    Suspended,
    /// An operator lifted a suspension or lockout.
    Unlocked,
    /// The password was changed by its owner.
    PasswordChanged,
    /// The password was set through a reset link.
    PasswordReset,
    /// A session ended (`details.reason`).
    SessionEnded,
    /// 2FA was turned on.
    MfaEnabled,
    /// 2FA was turned off.
    MfaDisabled,
    /// A recovery code was used to log in.
    RecoveryCodeUsed,
    /// An API key was made.
    ApiKeyCreated,
    /// An API key was revoked.
    ApiKeyRevoked,
    /// An API key was replaced by a new one.
    ApiKeyRotated,
    /// An API key was used from a client network it had not used in 30
    /// days (`details`: the key's prefix and name, the network).
    #[strum(serialize = "api_key.new_network")]
    ApiKeyNewNetwork,
    /// An API key's first `rate_limited` answer of a day (UTC).
    #[strum(serialize = "api_key.rate_limited")]
    ApiKeyRateLimited,
    /// An operator changed the plan.
    PlanChanged,
    /// A provider identity was linked (OAuth).
    #[strum(serialize = "oauth_linked")]
    OAuthLinked,
    /// A provider identity was unlinked by its owner (`details.provider`).
    #[strum(serialize = "oauth_unlinked")]
    OAuthUnlinked,
    /// A passkey was added (`details`: its id and name).
    PasskeyAdded,
    /// A passkey was removed by its owner (`details`: its id and name).
    PasskeyRemoved,
    /// A change of the e-mail address was asked for (`details`: `from`, `to`).
    EmailChangeRequested,
    /// The e-mail address changed, confirmed by the link sent to the new
    /// one (`details`: `from`, `to`).
    EmailChanged,
    /// The account was deleted (`details.by`: `owner` or `operator`). The
    /// account's earlier events are kept without IP, user agent or details.
    AccountDeleted,
}

impl EventKind {
    /// Every kind.
    pub const ALL: &'static [EventKind] = <Self as strum::VariantArray>::VARIANTS;

    /// The stable name, as in the API and storage.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// A stored event kind this version does not know.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

fn unknown_event_kind(name: &str) -> UnknownEventKind {
    UnknownEventKind(name.to_owned())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_stored_names_and_parse_back() {
        // The names the API and the stored audit trail have always used.
        let names = "signup email_verified login_succeeded reauthenticated login_failed locked_out \
            suspended unlocked password_changed password_reset session_ended mfa_enabled \
            mfa_disabled recovery_code_used api_key_created api_key_revoked api_key_rotated \
            api_key.new_network api_key.rate_limited plan_changed oauth_linked oauth_unlinked \
            passkey_added passkey_removed email_change_requested email_changed account_deleted";
        let written: Vec<&str> = EventKind::ALL.iter().map(EventKind::as_str).collect();
        assert_eq!(written, names.split_whitespace().collect::<Vec<_>>());
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().ok(), Some(*kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        let unknown = "login_succeded".parse::<EventKind>().unwrap_err();
        assert_eq!(unknown.0, "login_succeded");
    }
}
