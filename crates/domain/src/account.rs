//! The account's whole life beyond signup: a change of e-mail address that
//! waits for the new address to confirm it, and the deletion of the account.

use crate::{Email, SessionId, TokenHash, User, UserId};
use chrono::{DateTime, Duration, Utc};

/// A change of address waiting for its link (`AUTH_EMAIL_CHANGE_TTL`) to be
/// used. A newer request of the account replaces it; a password change or
/// reset, and the confirmation itself, end it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChangeRequest {
    /// The account.
    pub user: UserId,
    /// The address asked for.
    pub new_email: Email,
    /// The hash of the token mailed to the new address.
    pub token: TokenHash,
    /// The session that asked: it stays signed in when the change ends the others.
    pub session: Option<SessionId>,
    /// When it was asked.
    pub created_at: DateTime<Utc>,
    /// When its link stops working.
    pub expires_at: DateTime<Utc>,
}

/// A change of address not yet confirmed, as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEmailChange {
    /// The address asked for.
    pub new_email: Email,
    /// When its link stops working.
    pub expires_at: DateTime<Utc>,
}

/// What confirming a change of address did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailChangeOutcome {
    /// The token is unknown, used, expired or replaced: nothing changed.
    Invalid,
    /// Another account took the address meanwhile: nothing changed, and
    /// the link is used up.
    Taken,
    /// The address changed.
    Changed {
        /// The account as it is now (its address verified).
        user: Box<User>,
        /// The address it had.
        old_email: Email,
        /// The sessions the change ended (all but the one that asked).
        ended: Vec<SessionId>,
    },
}

/// What deleting an account removed, for the caches to forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedAccount {
    /// The sessions that were active.
    pub sessions: Vec<SessionId>,
    /// The public ids of its API keys (all of them, revoked ones included).
    pub api_keys: Vec<String>,
}

/// How long a change-of-address link works by default (`AUTH_EMAIL_CHANGE_TTL`).
pub const EMAIL_CHANGE_TTL: Duration = Duration::hours(24);
