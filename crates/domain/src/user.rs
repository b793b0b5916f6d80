//! User accounts.

use crate::{Email, PasswordHash, Plan, UserId};
use chrono::{DateTime, Utc};

/// A user account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The account's id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Login address, unique, lower-cased.
    pub email: Email,
    /// Whether the owner proved they read mail sent to `email`.
    pub email_verified: bool,
    /// The argon2id hash; `None` for an account made through OAuth.
    pub password_hash: Option<PasswordHash>,
    /// Optional company.
    pub company: Option<String>,
    /// Optional country.
    pub country: Option<String>,
    /// Optional phone number.
    pub phone: Option<String>,
    /// The billing plan.
    pub plan: Plan,
    /// Whether TOTP two-factor authentication is on.
    pub mfa_enabled: bool,
    /// Suspended by an operator: no login, no session, no key.
    pub suspended: bool,
    /// Consecutive failed password checks since the last success or lockout.
    pub failed_logins: u32,
    /// Locked after too many failed logins, until then.
    pub locked_until: Option<DateTime<Utc>>,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
}

impl User {
    /// Whether failed logins keep the account locked at `now`.
    pub fn is_locked_out(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

/// What storage needs to create an account.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The new id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Login address.
    pub email: Email,
    /// Already verified (OAuth) or not (signup).
    pub email_verified: bool,
    /// The argon2id hash, if the account has a password.
    pub password_hash: Option<PasswordHash>,
    /// Optional company.
    pub company: Option<String>,
    /// Optional country.
    pub country: Option<String>,
    /// Optional phone.
    pub phone: Option<String>,
    /// Starting plan.
    pub plan: Plan,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}
