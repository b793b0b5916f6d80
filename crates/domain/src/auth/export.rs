//! The account's data, all of it, for its owner (GDPR articles 15 and 20):
//! every record the service keeps about the account, without a secret or
//! a hash of one.

use super::Auth;
use crate::account::PendingEmailChange;
use crate::api_key::ApiKey;
use crate::oauth::IdentityRecord;
use crate::ports::{
    AccountRepository, ApiKeyRepository, Mailer, OAuthRepository, PasskeyRepository, PasswordHasher, Store,
    TokenSigner, UsageRepository,
};
use crate::usage::{Granularity, KeyNetworkUse, Usage, UsageRange, MAX_DAYS};
use crate::{ClientContext, InfraError, SecurityEvent, Session, User};
use chrono::{DateTime, Duration, Utc};

/// One key as the export shows it.
#[derive(Debug, Clone)]
pub struct KeyExport {
    /// The key.
    pub key: ApiKey,
    /// The client of its last use.
    pub last_client: ClientContext,
    /// The networks it was used from, most recent first.
    pub networks: Vec<KeyNetworkUse>,
    /// Its usage by day.
    pub usage: Usage,
}

/// Everything kept about one account.
#[derive(Debug, Clone)]
pub struct AccountExport {
    /// When it was taken.
    pub exported_at: DateTime<Utc>,
    /// The profile (the password hash is not shown by whoever renders it).
    pub user: User,
    /// A change of address waiting for its link (never the link itself).
    pub pending_email_change: Option<PendingEmailChange>,
    /// Whether a TOTP authenticator is enrolled, and recovery codes left.
    pub recovery_codes_left: u32,
    /// The active sessions, newest first.
    pub sessions: Vec<Session>,
    /// Every API key, newest first (prefixes, never the secrets), with
    /// where it was used from and its usage by day.
    pub api_keys: Vec<KeyExport>,
    /// The linked provider identities, oldest first.
    pub identities: Vec<IdentityRecord>,
    /// The passkeys, oldest first (their public keys are no one's business
    /// but the verifier's, and whoever renders this leaves them out).
    pub passkeys: Vec<crate::passkey::Passkey>,
    /// The whole audit trail, newest first.
    pub events: Vec<SecurityEvent>,
    /// The account's usage by day, as far back as it is kept.
    pub usage: Usage,
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store + AccountRepository + ApiKeyRepository + OAuthRepository + PasskeyRepository + UsageRepository,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
{
    /// Everything kept about `user`'s account.
    pub async fn export(&self, user: &User) -> Result<AccountExport, InfraError> {
        let now = self.clock.now();
        let mut events = Vec::new();
        let mut before = None;
        loop {
            let page = self.events(user.id, before, 100).await?;
            events.extend(page.events);
            match page.next {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        let range = UsageRange::ending_at(now, Duration::days(MAX_DAYS), Granularity::Day);
        Ok(AccountExport {
            exported_at: now,
            recovery_codes_left: if user.mfa_enabled {
                self.store.recovery_codes_left(user.id).await?
            } else {
                0
            },
            pending_email_change: self.store.pending_email_change(user.id, now).await?,
            sessions: self.sessions(user.id).await?,
            api_keys: self.keys_export(user, range).await?,
            identities: self.store.identities(user.id).await?,
            passkeys: self.store.passkeys(user.id).await?,
            events,
            usage: self.account_usage(user, range).await?,
            user: user.clone(),
        })
    }

    async fn keys_export(&self, user: &User, range: UsageRange) -> Result<Vec<KeyExport>, InfraError> {
        let mut keys = Vec::new();
        for (key, usage) in self.keys_with_usage(user, range).await? {
            keys.push(KeyExport {
                last_client: self.store.api_key_last_client(key.id).await?,
                networks: self.store.key_networks(key.id).await?,
                usage,
                key,
            });
        }
        Ok(keys)
    }
}
