//! Usage use cases: writing what the instances counted, reading it back,
//! and telling a key's owner when the key is used in a way it never was.

use super::{AdminError, Auth, NotFoundError};
use crate::api_key::{ApiKey, ApiKeyId};
use crate::event::{ClientContext, EventKind};
use crate::ports::{ApiKeyRepository, Mail, Mailer, PasswordHasher, Store, TokenSigner, UnusualUse, UsageRepository};
use crate::usage::{Granularity, KeySighting, Usage, UsageBatch, UsageCounts, UsageRange, UsageSubject};
use crate::{InfraError, User};
use chrono::{DateTime, Duration, Utc};

/// A network a key has not used for this long is new again.
pub const NETWORK_FORGOTTEN_AFTER: Duration = Duration::days(30);

/// A key this young is still finding its networks: nothing is told.
pub const QUIET_FIRST_DAY: Duration = Duration::days(1);

/// A key's usage, with where it was last used from.
#[derive(Debug, Clone)]
pub struct KeyUsage {
    /// The key.
    pub key: ApiKey,
    /// Its counts.
    pub usage: Usage,
    /// The client of its last use (IP through trusted proxies, `User-Agent`).
    pub last_client: ClientContext,
}

/// An account's usage for an operator.
#[derive(Debug, Clone)]
pub struct AccountReport {
    /// The account.
    pub user: User,
    /// Its usage by day.
    pub usage: Usage,
    /// Its keys with their totals over the same days, busiest first.
    pub keys: Vec<(ApiKey, UsageCounts)>,
}

impl<S, H, T, M, L> Auth<S, H, T, M, L>
where
    S: Store + ApiKeyRepository + UsageRepository,
    H: PasswordHasher,
    T: TokenSigner,
    M: Mailer,
{
    /// Writes what an instance counted: the keys' last uses, then the
    /// counts (its sightings go to [`review_usage`](Self::review_usage)).
    ///
    /// In that order because a last use only moves forward: a batch whose
    /// counts failed can be written again whole without counting anything
    /// twice, and whoever reads a key's counts reads who made them too.
    pub async fn record_usage(&self, batch: &UsageBatch) -> Result<(), InfraError> {
        if !batch.uses.is_empty() {
            self.store.record_api_key_use(&batch.uses).await?;
        }
        if !batch.deltas.is_empty() {
            self.store.add_usage(&batch.deltas).await?;
        }
        Ok(())
    }

    /// Reviews sightings for unusual use, which may add a security event
    /// and e-mail the owner. Reviewing one twice tells nothing twice.
    pub async fn review_usage(&self, sightings: &[KeySighting]) -> Result<(), InfraError> {
        for sighting in sightings {
            self.review(sighting).await?;
        }
        Ok(())
    }

    /// The usage of every key and session of `user`, in `range`.
    pub async fn account_usage(&self, user: &User, range: UsageRange) -> Result<Usage, InfraError> {
        let stored = self.store.usage(UsageSubject::Account(user.id), &range).await?;
        Ok(Usage::new(
            range,
            self.config.plan_limits.per_minute(user.plan),
            &stored,
        ))
    }

    /// The usage of one key of `user`, in `range`.
    pub async fn key_usage(&self, user: &User, id: ApiKeyId, range: UsageRange) -> Result<KeyUsage, NotFoundError> {
        let key = self.store.api_key(user.id, id).await?.ok_or(NotFoundError::NotFound)?;
        let stored = self.store.usage(UsageSubject::Key(id), &range).await?;
        Ok(KeyUsage {
            usage: Usage::new(range, self.config.plan_limits.per_minute(user.plan), &stored),
            last_client: self.store.api_key_last_client(id).await?,
            key,
        })
    }

    /// Whether a sighting is unusual. A new network adds an event each
    /// time; a day's first `rate_limited` adds one; the e-mail goes once a
    /// day per key and kind, whichever instance saw it first.
    async fn review(&self, sighting: &KeySighting) -> Result<(), InfraError> {
        let (key, user, at, kind, what) = match *sighting {
            KeySighting::Network { key, user, network, at } => {
                let network = network.to_string();
                let last = self.store.note_key_network(key, &network, at).await?;
                if last.is_some_and(|last| at - last <= NETWORK_FORGOTTEN_AFTER) {
                    return Ok(());
                }
                (
                    key,
                    user,
                    at,
                    EventKind::ApiKeyNewNetwork,
                    UnusualUse::NewNetwork(network),
                )
            }
            KeySighting::RateLimited { key, user, at } => {
                (key, user, at, EventKind::ApiKeyRateLimited, UnusualUse::RateLimited)
            }
        };
        let Some(record) = self.store.api_key(user, key).await? else {
            return Ok(());
        };
        if kind == EventKind::ApiKeyNewNetwork && at - record.created_at < QUIET_FIRST_DAY {
            return Ok(());
        }
        let mail_due = self.store.claim_usage_alert(key, kind, at).await?;
        if let UnusualUse::NewNetwork(network) = &what {
            let (id, prefix) = (record.id.to_string(), record.prefix());
            let details = [
                ("api_key_id", id.as_str()),
                ("prefix", &prefix),
                ("name", &record.name),
                ("network", network),
            ];
            self.record(user, kind, &ClientContext::default(), &details).await?;
        } else if mail_due {
            self.record_key_event(kind, &record, &ClientContext::default(), None)
                .await?;
        }
        if mail_due {
            self.tell_owner(&record, what, at).await?;
        }
        Ok(())
    }

    async fn tell_owner(&self, key: &ApiKey, what: UnusualUse, at: DateTime<Utc>) -> Result<(), InfraError> {
        let Some(owner) = self.store.user_by_id(key.user_id).await? else {
            return Ok(());
        };
        self.mailer
            .send(Mail::UnusualKeyUse {
                to: owner.email.clone(),
                name: owner.name.clone(),
                key_name: key.name.clone(),
                prefix: key.prefix(),
                what,
                at,
                key_link: format!("{}/settings/api-keys/{}", self.config.public_url, key.id),
            })
            .await
    }

    /// Operator: the account's usage by day over the last `days` days
    /// (today included), and its keys with their totals, busiest first.
    pub async fn admin_usage(&self, email: &str, days: u32) -> Result<AccountReport, AdminError> {
        let user = self.user_by_email_or_unknown(email).await?;
        let days = i64::from(days.clamp(1, crate::usage::MAX_DAYS as u32));
        let now = self.clock.now();
        let range = UsageRange::ending_at(now, Duration::days(days), Granularity::Day);
        let usage = self.account_usage(&user, range).await?;
        let mut keys: Vec<(ApiKey, UsageCounts)> = (self.keys_with_usage(&user, range).await?)
            .into_iter()
            .map(|(key, usage)| (key, usage.totals))
            .collect();
        keys.sort_by_key(|(_, totals)| std::cmp::Reverse(totals.requests()));
        Ok(AccountReport { user, usage, keys })
    }

    /// Every key of `user`, newest first, each with its usage in `range`.
    pub async fn keys_with_usage(&self, user: &User, range: UsageRange) -> Result<Vec<(ApiKey, Usage)>, InfraError> {
        let limit = self.config.plan_limits.per_minute(user.plan);
        let mut keys = Vec::new();
        for key in self.store.api_keys(user.id).await? {
            let stored = self.store.usage(UsageSubject::Key(key.id), &range).await?;
            keys.push((key, Usage::new(range, limit, &stored)));
        }
        Ok(keys)
    }

    /// Deletes usage older than `before` (the retention).
    pub async fn prune_usage(&self, before: DateTime<Utc>) -> Result<u64, InfraError> {
        self.store.prune_usage(before).await
    }
}
