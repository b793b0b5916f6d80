//! [`CallerCache`]: the domain's [`CredentialCache`], shared by every
//! worker thread of an instance.

use chrono::{DateTime, Utc};
use convosphere_domain::auth::Caller;
use convosphere_domain::ports::{CredentialCache, CredentialKey, Invalidation};
use convosphere_domain::SessionId;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many callers an instance remembers at most (by default).
pub const CAPACITY: usize = 100_000;

/// How many refused client networks are remembered at most: past it the
/// coldest go, and are checked (and counted) again.
const REFUSED_NETWORKS: usize = 10_000;

/// How many buckets the stamps spread ids over.
const BUCKETS: usize = 256;

/// A remembered caller, with the stamp it was remembered under.
#[derive(Clone)]
struct Entry {
    caller: Caller,
    stamp: Stamp,
    until: DateTime<Utc>,
}

/// Where the counters of a caller's user and credential stood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    epoch: u64,
    user: u64,
    credential: u64,
}

/// The callers of credentials checked lately (see the crate's docs).
pub struct CallerCache {
    entries: quick_cache::sync::Cache<CredentialKey, Entry>,
    /// Moves on before every forget ([`CredentialCache::generation`]).
    generation: AtomicU64,
    /// Moves on when everything is forgotten.
    epoch: AtomicU64,
    /// Counters of the buckets that users, sessions and keys hash to.
    buckets: [AtomicU64; BUCKETS],
    /// Sessions whose use is being written.
    touching: Mutex<HashSet<SessionId>>,
    /// Client networks refused until a time (their failed checks spent their budget).
    refused: quick_cache::sync::Cache<std::net::IpAddr, DateTime<Utc>>,
}

fn fold(uuid: uuid::Uuid) -> u64 {
    let (high, low) = uuid.as_u64_pair();
    high ^ low
}

fn fold_public_id(public_id: &str) -> u64 {
    // FNV-1a: public ids are random base62 already.
    public_id.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// The user's and the credential's hashes of a caller.
fn subjects(caller: &Caller) -> (u64, u64) {
    let user = fold(caller.user().id.as_uuid());
    let credential = match caller {
        Caller::User(principal) => fold(principal.session_id.as_uuid()),
        Caller::Key(principal) => fold_public_id(&principal.key.public_id),
    };
    (user, credential)
}

impl CallerCache {
    /// A cache of at most about `capacity` callers.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            touching: Mutex::default(),
            refused: quick_cache::sync::Cache::new(REFUSED_NETWORKS),
        }
    }

    /// Forgets everything (the invalidation feed could not be read, so
    /// what changed meanwhile is unknown).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }

    /// How many callers it holds (stale ones not yet read included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn bucket(&self, hash: u64) -> &AtomicU64 {
        // The top bits of a multiplicative hash: every input bit counts.
        let index = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BUCKETS.trailing_zeros());
        &self.buckets[index as usize]
    }

    fn stamp(&self, (user, credential): (u64, u64)) -> Stamp {
        Stamp {
            epoch: self.epoch.load(Ordering::Acquire),
            user: self.bucket(user).load(Ordering::Acquire),
            credential: self.bucket(credential).load(Ordering::Acquire),
        }
    }
}

impl CredentialCache for CallerCache {
    fn get(&self, key: &CredentialKey, now: DateTime<Utc>) -> Option<Caller> {
        let entry = self.entries.get(key)?;
        if now < entry.until && self.stamp(subjects(&entry.caller)) == entry.stamp {
            return Some(entry.caller);
        }
        self.entries.remove(key);
        None
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn insert(&self, key: CredentialKey, caller: Caller, until: DateTime<Utc>) {
        let stamp = self.stamp(subjects(&caller));
        self.entries.insert(key, Entry { caller, stamp, until });
    }

    fn remove(&self, key: &CredentialKey) {
        self.entries.remove(key);
    }

    fn forget(&self, invalidation: &Invalidation) {
        // The generation first: a check that sees the bucket moved sees
        // the generation moved too, and does not remember what it read.
        self.generation.fetch_add(1, Ordering::AcqRel);
        let hash = match invalidation {
            Invalidation::User(id) => fold(id.as_uuid()),
            Invalidation::Session(id) => fold(id.as_uuid()),
            Invalidation::ApiKey(public_id) => fold_public_id(public_id),
        };
        self.bucket(hash).fetch_add(1, Ordering::AcqRel);
    }

    fn claim_touch(&self, session: SessionId) -> bool {
        self.touching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(session)
    }

    fn release_touch(&self, session: SessionId) {
        self.touching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&session);
    }

    fn refuse_client(&self, client: std::net::IpAddr, until: DateTime<Utc>) {
        self.refused.insert(client, until);
    }

    fn refused_until(&self, client: std::net::IpAddr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.refused.get(&client).filter(|until| now < *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_spread_over_every_bucket() {
        let cache = CallerCache::new(10);
        let mut used = HashSet::new();
        for n in 0..20_000u128 {
            // Ids are UUID v7: the time in the high bits, random low bits.
            let id = uuid::Uuid::from_u128((n << 80) | n.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
            used.insert(cache.bucket(fold(id)) as *const AtomicU64 as usize);
        }
        assert_eq!(used.len(), BUCKETS);
    }

    #[test]
    fn a_touch_is_claimed_once_until_released() {
        let cache = CallerCache::new(10);
        let session = SessionId::from_uuid(uuid::Uuid::from_u128(1));
        assert!(cache.claim_touch(session));
        assert!(!cache.claim_touch(session));
        assert!(cache.claim_touch(SessionId::from_uuid(uuid::Uuid::from_u128(2))));
        cache.release_touch(session);
        assert!(cache.claim_touch(session));
    }
}
