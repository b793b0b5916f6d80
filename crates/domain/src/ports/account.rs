//! The port of the account's life: changes of address and deletion, each
//! one transaction in storage.

use crate::account::{DeletedAccount, EmailChangeOutcome, EmailChangeRequest, PendingEmailChange};
use crate::{InfraError, SecurityEvent, TokenHash, UserId};
use chrono::{DateTime, Utc};
use std::future::Future;

/// Stores changes of address and deletes accounts.
pub trait AccountRepository: Send + Sync {
    /// Stores a change of address; the account's earlier one stops working.
    fn request_email_change(&self, request: &EmailChangeRequest)
        -> impl Future<Output = Result<(), InfraError>> + Send;

    /// The account's change of address waiting for confirmation, if any.
    fn pending_email_change(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<PendingEmailChange>, InfraError>> + Send;

    /// Confirms the change whose token hashes to `token`, in one
    /// transaction: the token is used (of parallel calls exactly one gets
    /// `Changed`), the address changes and counts as verified, every
    /// one-time link of the account (verification, reset) and every other
    /// pending change ends, and every session but the one that asked ends
    /// with reason `email_changed`, announced to the caches.
    fn confirm_email_change(
        &self,
        token: &TokenHash,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<EmailChangeOutcome, InfraError>> + Send;

    /// Deletes the account, in one transaction: its sessions, refresh
    /// tokens, API keys, passkeys, provider links, 2FA, links, usage and
    /// profile go; the caches hear of every session, key and the account;
    /// its earlier security events lose their IP, user agent and details,
    /// and `event` (without them) is added. `None` if there was no such
    /// account (a parallel deletion got there first).
    fn delete_account(
        &self,
        user: UserId,
        event: &SecurityEvent,
    ) -> impl Future<Output = Result<Option<DeletedAccount>, InfraError>> + Send;
}
