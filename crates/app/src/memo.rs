//! What each worker thread remembers of the credentials it checked lately:
//! the principal of an API key or of an access token, by the SHA-256 of the
//! whole credential.
//!
//! The caches of [`crate::cache`] keep the database and the signature
//! check out of the hot path, but every request still pays for reading
//! them: two or three shared lookups, each copying its entry (the `User`
//! with its strings), and for a key its checksum and the check of its
//! secret. A credential seen again on the same thread costs one hash of it
//! and one lookup here, and shares the principal instead of copying it.
//!
//! An entry is used only while it is current:
//! - the [`Stamp`] of its user and its credential (the key, or the token's
//!   session) has not moved: a revocation, rotation, logout, suspension or
//!   plan change forgets the cached entries it touches, on this instance at
//!   once and on the others through the invalidation feed, and forgetting
//!   moves the stamp;
//! - for at most [`MEMO_TTL`], so that what the caches refresh by time
//!   (another instance's profile change) shows here as well;
//! - never past what the use case says the outcome holds until: a key's
//!   expiry; a token's expiry, its session's end and the next time the
//!   session's use must be recorded
//!   ([`Principal::holds_until`](convosphere_domain::auth::Principal::holds_until)).
//!
//! Only successful checks are remembered: forged, expired or revoked
//! credentials always take the full check, and cannot fill the memo.

use crate::cache::Stamp;
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

/// How long an entry is used at most.
pub const MEMO_TTL: Duration = Duration::seconds(1);
/// How many entries one thread keeps at most.
pub const MEMO_CAPACITY: usize = 4096;

/// The SHA-256 of a credential: the key of the memo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest of a credential.
    pub fn of(credential: &str) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(credential.as_bytes()).into())
    }
}

impl Hash for Digest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // A SHA-256 is uniform already: eight of its bytes are a hash.
        let mut first = [0; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// Hands on the `u64` a [`Digest`] hashes to.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `Digest`; anything else folds in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

struct Entry<V> {
    value: Arc<V>,
    stamp: Stamp,
    until: DateTime<Utc>,
}

/// The remembered principals of one thread.
pub struct Memo<V> {
    entries: HashMap<Digest, Entry<V>, BuildHasherDefault<DigestHasher>>,
    capacity: usize,
}

impl<V> Memo<V> {
    /// An empty memo of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::default(),
            capacity,
        }
    }

    /// The remembered value, if it is still current: `stamp` gives where
    /// its stamps stand now, `now` is the time.
    pub fn get(&mut self, digest: &Digest, now: DateTime<Utc>, stamp: impl FnOnce(&V) -> Stamp) -> Option<Arc<V>> {
        let entry = self.entries.get(digest)?;
        if now < entry.until && stamp(&entry.value) == entry.stamp {
            return Some(Arc::clone(&entry.value));
        }
        self.entries.remove(digest);
        None
    }

    /// Remembers `value`, derived under `stamp` at `now`, until `holds_until`
    /// or for [`MEMO_TTL`], whichever comes first. When full, what is no
    /// longer current goes first, then everything.
    pub fn insert(
        &mut self,
        digest: Digest,
        value: Arc<V>,
        stamp: Stamp,
        now: DateTime<Utc>,
        holds_until: DateTime<Utc>,
    ) {
        let until = holds_until.min(now + MEMO_TTL);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&digest) {
            self.entries.retain(|_, entry| now < entry.until);
            if self.entries.len() >= self.capacity {
                self.entries.clear();
            }
        }
        self.entries.insert(digest, Entry { value, stamp, until });
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CachedStore;
    use convosphere_domain::UserId;

    fn stamp_of(store: &CachedStore<()>, user: UserId) -> Stamp {
        store.key_stamp(user, "AbCd1234")
    }

    #[test]
    fn an_entry_is_used_while_its_stamp_holds_and_its_time_lasts() {
        let store = CachedStore::new(());
        let user = UserId::from_uuid(uuid::Uuid::new_v4());
        let mut memo = Memo::new(16);
        let now = Utc::now();
        let digest = Digest::of("cs_key");
        memo.insert(
            digest,
            Arc::new(7),
            stamp_of(&store, user),
            now,
            DateTime::<Utc>::MAX_UTC,
        );
        assert_eq!(memo.get(&digest, now, |_| stamp_of(&store, user)).as_deref(), Some(&7));
        assert_eq!(memo.get(&Digest::of("cs_other"), now, |_| stamp_of(&store, user)), None);
        // Past its time: gone, and forgotten.
        assert_eq!(memo.get(&digest, now + MEMO_TTL, |_| stamp_of(&store, user)), None);
        assert!(memo.is_empty());
        // Never past what the use case said it holds until.
        memo.insert(
            digest,
            Arc::new(8),
            stamp_of(&store, user),
            now,
            now + Duration::milliseconds(10),
        );
        assert_eq!(
            memo.get(&digest, now + Duration::milliseconds(9), |_| stamp_of(&store, user))
                .as_deref(),
            Some(&8)
        );
        assert_eq!(
            memo.get(&digest, now + Duration::milliseconds(10), |_| stamp_of(&store, user)),
            None
        );
    }

    #[test]
    fn an_entry_of_other_caches_or_a_moved_stamp_is_not_used() {
        let (store, other) = (CachedStore::new(()), CachedStore::new(()));
        let user = UserId::from_uuid(uuid::Uuid::new_v4());
        let mut memo = Memo::new(16);
        let now = Utc::now();
        let digest = Digest::of("cs_key");
        memo.insert(digest, Arc::new(7), stamp_of(&store, user), now, now + MEMO_TTL);
        assert_eq!(memo.get(&digest, now, |_| stamp_of(&other, user)), None);
        assert_eq!(memo.len(), 0);
    }

    #[test]
    fn a_full_memo_drops_what_expired_first_and_never_grows_past_its_capacity() {
        let store = CachedStore::new(());
        let user = UserId::from_uuid(uuid::Uuid::new_v4());
        let mut memo = Memo::new(8);
        let now = Utc::now();
        let later = now + Duration::seconds(5);
        for i in 0..4 {
            memo.insert(
                Digest::of(&format!("old{i}")),
                Arc::new(i),
                stamp_of(&store, user),
                now,
                now + Duration::seconds(4),
            );
        }
        for i in 0..4 {
            memo.insert(
                Digest::of(&format!("new{i}")),
                Arc::new(i),
                stamp_of(&store, user),
                later,
                DateTime::<Utc>::MAX_UTC,
            );
        }
        memo.insert(
            Digest::of("one more"),
            Arc::new(9),
            stamp_of(&store, user),
            later,
            DateTime::<Utc>::MAX_UTC,
        );
        assert_eq!(memo.len(), 5, "the four expired entries made room");
        assert!(memo
            .get(&Digest::of("new3"), later, |_| stamp_of(&store, user))
            .is_some());
        for i in 0..100 {
            memo.insert(
                Digest::of(&format!("flood{i}")),
                Arc::new(i),
                stamp_of(&store, user),
                later,
                DateTime::<Utc>::MAX_UTC,
            );
            assert!(memo.len() <= 8);
        }
    }
}
