//! Caches that keep the hot path (`/v1/authz`, every authenticated request)
//! off the database and off the signature check in the steady state, while
//! revocation still takes effect at once.
//!
//! - [`CachedSigner`] remembers a verified access token (by the SHA-256 of
//!   the whole token) until its `exp`: an EdDSA verify costs ~65 µs, a hash
//!   lookup well under 1 µs.
//! - [`CachedStore`] decorates the storage adapter: sessions, users and API
//!   keys read by authentication are cached (bounded, with a short TTL);
//!   every write through it forgets what it changed, on this instance at once.
//! - Other instances, and the command line, reach the caches through the
//!   durable [`InvalidationFeed`] that storage writes in the same transaction
//!   as the change: [`spawn_invalidation_poller`] reads it every 250 ms, so
//!   every instance honours a revocation within one second. If the feed cannot
//!   be read, the caches are emptied (the next request asks the database).

use chrono::{DateTime, Utc};
use convosphere_domain::api_key::{ApiKey, ApiKeyId};
use convosphere_domain::ports::{
    AccessClaims, ApiKeyRepository, CreateUserError, EventRepository, FailedLogin, Invalidation, InvalidationFeed,
    MfaRepository, OneTimeTokenRepository, RefreshOutcome, SessionRepository, TokenSigner, TokenVerifyError,
    TotpEnrolment, UserRepository,
};
use convosphere_domain::profile::ProfileUpdate;
use convosphere_domain::{
    Email, EndReason, EventId, InfraError, NewUser, PasswordHash, Plan, SecurityEvent, Session, SessionId, TokenHash,
    TokenKind, User, UserId,
};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many entries each cache holds at most.
pub const CACHE_CAPACITY: u64 = 100_000;
/// How often the invalidation feed is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A bounded concurrent cache whose entries expire `ttl` after they were
/// inserted. `quick_cache` underneath: its S3-FIFO eviction keeps entries
/// that are read again over a flood of one-off keys (forged API keys, say),
/// and a read costs a hash and a short read lock. moka, used before, cost
/// several times that per read (a `/v1/authz` request makes two or three),
/// for features these caches do not use.
pub struct TtlCache<K, V> {
    entries: quick_cache::sync::Cache<K, (V, Instant)>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    /// At most about `capacity` entries, each kept at most `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(usize::try_from(capacity).unwrap_or(usize::MAX)),
            ttl,
        }
    }

    /// A copy of the entry, unless it is missing or has expired.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        let (value, expires) = self.entries.get(key)?;
        if Instant::now() >= expires {
            self.entries.remove(key);
            return None;
        }
        Some(value)
    }

    /// The entry, or else the one `make` gives, added for `ttl` from now.
    /// Callers that ask for a missing key at once share one `make`'s value.
    pub fn get_with(&self, key: K, make: impl FnOnce() -> V) -> V {
        if let Some(value) = self.get(&key) {
            return value;
        }
        let made = self.entries.get_or_insert_with(&key, || {
            Ok::<_, std::convert::Infallible>((make(), Instant::now() + self.ttl))
        });
        match made {
            Ok((value, _)) => value,
            Err(never) => match never {},
        }
    }

    /// Adds or replaces an entry, for `ttl` from now.
    pub fn insert(&self, key: K, value: V) {
        self.entries.insert(key, (value, Instant::now() + self.ttl));
    }

    /// Forgets an entry.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        Q: Hash + quick_cache::Equivalent<K> + ?Sized,
    {
        self.entries.remove(key);
    }

    /// Forgets every entry.
    pub fn invalidate_all(&self) {
        self.entries.clear();
    }
}

/// The caches of credentials' state.
pub struct Caches {
    sessions: TtlCache<SessionId, Session>,
    users: TtlCache<UserId, User>,
    keys: TtlCache<String, Option<ApiKey>>,
    /// Moves on after every invalidation. A read-through snapshots it before
    /// reading the database and caches what it read only if it has not
    /// moved: otherwise a read that began before a revocation committed
    /// could put the revoked state back after the revocation cleared it.
    generation: AtomicU64,
    /// Finer than `generation`, for what is derived from the entries.
    stamps: Stamps,
    /// Sessions whose touch is being written (see `touch_session`).
    touching: Mutex<HashSet<SessionId>>,
}

/// A session's touch in flight; the next one may start once it is dropped
/// (written, failed or cancelled).
struct TouchClaim<'a> {
    touching: &'a Mutex<HashSet<SessionId>>,
    id: SessionId,
}

impl<'a> TouchClaim<'a> {
    /// The claim, unless another touch of the session is in flight.
    fn take(touching: &'a Mutex<HashSet<SessionId>>, id: SessionId) -> Option<Self> {
        let taken = touching.lock().unwrap_or_else(PoisonError::into_inner).insert(id);
        // Not `then_some`: it would build (and drop) a claim when not
        // taken, and its drop would release the claim of the touch in flight.
        taken.then(|| Self { touching, id })
    }
}

impl Drop for TouchClaim<'_> {
    fn drop(&mut self) {
        self.touching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// How many buckets [`Stamps`] spreads ids over.
const STAMP_BUCKETS: usize = 256;

/// Stamps of what the caches hold, for what is derived from their entries
/// (the principals of [`crate::memo`]): forgetting a user, a session or an
/// API key moves the stamp of its bucket (ids are spread over 256 buckets),
/// emptying a whole cache moves the epoch. What was derived from a user's
/// and a credential's entries holds while the epoch and those two buckets
/// stay where they were: a logout or a failed login elsewhere does not
/// touch it, as the global `generation` would.
struct Stamps {
    /// Tells the stamps of one set of caches from another's (tests run
    /// several services in one process).
    caches: u64,
    epoch: AtomicU64,
    buckets: [AtomicU64; STAMP_BUCKETS],
}

/// Where the stamps of a user and one of its credentials stood (see
/// [`CachedStore::key_stamp`] and [`CachedStore::session_stamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    caches: u64,
    epoch: u64,
    user: u64,
    credential: u64,
}

impl Stamps {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Self {
            caches: NEXT.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn bucket(&self, hash: u64) -> &AtomicU64 {
        // The top bits of a multiplicative hash: every input bit counts.
        let index = hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - STAMP_BUCKETS.trailing_zeros());
        &self.buckets[index as usize]
    }

    /// Called after `Caches::moved`: whoever sees the stamp move also
    /// sees the generation moved (see `CachedStore::generation`).
    fn moved(&self, hash: u64) {
        self.bucket(hash).fetch_add(1, Ordering::AcqRel);
    }

    fn moved_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn stamp(&self, user: u64, credential: u64) -> Stamp {
        Stamp {
            caches: self.caches,
            epoch: self.epoch.load(Ordering::Acquire),
            user: self.bucket(user).load(Ordering::Acquire),
            credential: self.bucket(credential).load(Ordering::Acquire),
        }
    }
}

/// A UUID folded to 64 bits, for [`Stamps`].
fn fold(uuid: uuid::Uuid) -> u64 {
    let (high, low) = uuid.as_u64_pair();
    high ^ low
}

/// An API key's public id folded to 64 bits, for [`Stamps`].
fn fold_public_id(public_id: &str) -> u64 {
    public_id.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

impl Caches {
    fn new() -> Self {
        Self {
            // A session's `last_active_at` may be touched by another instance:
            // re-read it every minute (the idle timeout is hours).
            sessions: TtlCache::new(CACHE_CAPACITY, Duration::from_secs(60)),
            // Profile fields changed on another instance show within 5 s;
            // plan changes and suspensions come through the feed at once.
            users: TtlCache::new(CACHE_CAPACITY, Duration::from_secs(5)),
            keys: TtlCache::new(CACHE_CAPACITY, Duration::from_secs(60)),
            generation: AtomicU64::new(0),
            stamps: Stamps::new(),
            touching: Mutex::default(),
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Called after every invalidation.
    fn moved(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Caches `value` unless an invalidation happened since `seen`.
    fn insert_if_current<K, V>(&self, cache: &TtlCache<K, V>, seen: u64, key: K, value: V)
    where
        K: Hash + Eq + Clone,
        V: Clone,
    {
        if self.generation() != seen {
            return;
        }
        cache.insert(key.clone(), value);
        // An invalidation may have slipped in between the check and the
        // insert: then take it out again (it is only a cache).
        if self.generation() != seen {
            cache.invalidate(&key);
        }
    }

    fn forget_session(&self, id: &SessionId) {
        self.sessions.invalidate(id);
        self.moved();
        self.stamps.moved(fold(id.as_uuid()));
    }

    fn forget_user(&self, id: &UserId) {
        self.users.invalidate(id);
        self.moved();
        self.stamps.moved(fold(id.as_uuid()));
    }

    fn forget_key(&self, public_id: &str) {
        self.keys.invalidate(public_id);
        self.moved();
        self.stamps.moved(fold_public_id(public_id));
    }

    fn forget_all_keys(&self) {
        self.keys.invalidate_all();
        self.moved();
        self.stamps.moved_all();
    }

    fn apply(&self, invalidation: &Invalidation) {
        match invalidation {
            Invalidation::Session(id) => self.forget_session(id),
            Invalidation::User(id) => self.forget_user(id),
            Invalidation::ApiKey(public_id) => self.forget_key(public_id),
        }
    }

    fn clear(&self) {
        self.sessions.invalidate_all();
        self.users.invalidate_all();
        self.keys.invalidate_all();
        self.moved();
        self.stamps.moved_all();
    }
}

/// The storage adapter with cached reads for authentication.
#[derive(Clone)]
pub struct CachedStore<S> {
    inner: S,
    caches: Arc<Caches>,
}

impl<S> CachedStore<S> {
    /// Wraps a store.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            caches: Arc::new(Caches::new()),
        }
    }

    /// The store underneath (for readiness checks and housekeeping).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn forget_user(&self, id: UserId) {
        self.caches.forget_user(&id);
    }

    /// Moves on after every invalidation. Something derived from cached
    /// entries is current if this did not move while it was derived: read
    /// it before, then take the [`Stamp`] and read it again.
    pub fn generation(&self) -> u64 {
        self.caches.generation()
    }

    /// Where the stamps of an API key and its owner stand: a later stamp
    /// differs once either was forgotten (revoked, rotated, suspended, a plan
    /// change), on this instance or through the invalidation feed.
    pub fn key_stamp(&self, user: UserId, public_id: &str) -> Stamp {
        self.caches
            .stamps
            .stamp(fold(user.as_uuid()), fold_public_id(public_id))
    }

    /// Where the stamps of a session and its user stand (see [`Self::key_stamp`]).
    pub fn session_stamp(&self, user: UserId, session: SessionId) -> Stamp {
        self.caches.stamps.stamp(fold(user.as_uuid()), fold(session.as_uuid()))
    }
}

impl<S: UserRepository> UserRepository for CachedStore<S> {
    async fn create_user(&self, user: &NewUser) -> Result<User, CreateUserError> {
        self.inner.create_user(user).await
    }

    async fn create_user_with_link(
        &self,
        user: &NewUser,
        token: &TokenHash,
        token_expires_at: DateTime<Utc>,
        event: &convosphere_domain::SecurityEvent,
    ) -> Result<User, CreateUserError> {
        self.inner
            .create_user_with_link(user, token, token_expires_at, event)
            .await
    }

    async fn user_by_id(&self, id: UserId) -> Result<Option<User>, InfraError> {
        if let Some(user) = self.caches.users.get(&id) {
            return Ok(Some(user));
        }
        let seen = self.caches.generation();
        let user = self.inner.user_by_id(id).await?;
        if let Some(user) = &user {
            self.caches
                .insert_if_current(&self.caches.users, seen, id, user.clone());
        }
        Ok(user)
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, InfraError> {
        self.inner.user_by_email(email).await
    }

    async fn update_profile(&self, id: UserId, update: &ProfileUpdate) -> Result<Option<User>, InfraError> {
        let result = self.inner.update_profile(id, update).await;
        self.forget_user(id);
        result
    }

    async fn set_email_verified(&self, id: UserId) -> Result<Option<User>, InfraError> {
        let result = self.inner.set_email_verified(id).await;
        self.forget_user(id);
        result
    }

    async fn set_password_hash(&self, id: UserId, hash: &PasswordHash) -> Result<(), InfraError> {
        let result = self.inner.set_password_hash(id, hash).await;
        self.forget_user(id);
        result
    }

    async fn record_failed_login(
        &self,
        id: UserId,
        now: DateTime<Utc>,
        threshold: u32,
        locked_until: DateTime<Utc>,
    ) -> Result<FailedLogin, InfraError> {
        let result = self.inner.record_failed_login(id, now, threshold, locked_until).await;
        self.forget_user(id);
        result
    }

    async fn clear_failed_logins(&self, id: UserId) -> Result<(), InfraError> {
        let result = self.inner.clear_failed_logins(id).await;
        self.forget_user(id);
        result
    }

    async fn set_plan(&self, id: UserId, plan: Plan) -> Result<(), InfraError> {
        let result = self.inner.set_plan(id, plan).await;
        self.forget_user(id);
        result
    }

    async fn set_suspended(&self, id: UserId, suspended: bool) -> Result<(), InfraError> {
        let result = self.inner.set_suspended(id, suspended).await;
        self.forget_user(id);
        result
    }
}

impl<S: SessionRepository> SessionRepository for CachedStore<S> {
    async fn create_session(
        &self,
        session: &Session,
        refresh: &TokenHash,
        max_active: u32,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, InfraError> {
        let ended = self
            .inner
            .create_session(session, refresh, max_active, idle_cutoff)
            .await?;
        for id in &ended {
            self.caches.forget_session(id);
        }
        Ok(ended)
    }

    async fn rotate_refresh_token(
        &self,
        presented: &TokenHash,
        replacement: &TokenHash,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<RefreshOutcome, InfraError> {
        let seen = self.caches.generation();
        let outcome = self
            .inner
            .rotate_refresh_token(presented, replacement, now, idle_cutoff)
            .await?;
        match &outcome {
            RefreshOutcome::Rotated(session) => {
                self.caches
                    .insert_if_current(&self.caches.sessions, seen, session.id, session.clone());
            }
            RefreshOutcome::Reused(ended) => self.caches.forget_session(&ended.id),
            RefreshOutcome::Expired | RefreshOutcome::Unknown => {}
        }
        Ok(outcome)
    }

    async fn session(&self, id: SessionId) -> Result<Option<Session>, InfraError> {
        if let Some(session) = self.caches.sessions.get(&id) {
            return Ok(Some(session));
        }
        let seen = self.caches.generation();
        let session = self.inner.session(id).await?;
        if let Some(session) = &session {
            self.caches
                .insert_if_current(&self.caches.sessions, seen, id, session.clone());
        }
        Ok(session)
    }

    /// One touch per session at a time on this instance. The requests that
    /// find a session due while its touch is being written return at once:
    /// the write in flight records the same use. Otherwise every request of
    /// a busy session (a script with 32 connections, say) would write the
    /// same row in the milliseconds the first write takes, queued on the
    /// database's lock, and all of them would wait for the queue.
    async fn touch_session(&self, id: SessionId, now: DateTime<Utc>) -> Result<(), InfraError> {
        let Some(_claim) = TouchClaim::take(&self.caches.touching, id) else {
            return Ok(());
        };
        let seen = self.caches.generation();
        self.inner.touch_session(id, now).await?;
        if let Some(mut session) = self.caches.sessions.get(&id) {
            session.last_active_at = now;
            self.caches.insert_if_current(&self.caches.sessions, seen, id, session);
        }
        Ok(())
    }

    async fn end_session(
        &self,
        user: UserId,
        id: SessionId,
        now: DateTime<Utc>,
        reason: EndReason,
    ) -> Result<bool, InfraError> {
        let result = self.inner.end_session(user, id, now, reason).await;
        self.caches.forget_session(&id);
        result
    }

    async fn end_user_sessions(
        &self,
        user: UserId,
        except: Option<SessionId>,
        now: DateTime<Utc>,
        reason: EndReason,
    ) -> Result<Vec<SessionId>, InfraError> {
        let ended = self.inner.end_user_sessions(user, except, now, reason).await?;
        for id in &ended {
            self.caches.forget_session(id);
        }
        Ok(ended)
    }

    async fn active_sessions(
        &self,
        user: UserId,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<Vec<Session>, InfraError> {
        self.inner.active_sessions(user, now, idle_cutoff).await
    }
}

impl<S: OneTimeTokenRepository> OneTimeTokenRepository for CachedStore<S> {
    async fn issue_token(
        &self,
        user: UserId,
        kind: TokenKind,
        hash: &TokenHash,
        expires_at: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.inner.issue_token(user, kind, hash, expires_at).await
    }

    async fn peek_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, InfraError> {
        self.inner.peek_token(kind, hash, now).await
    }

    async fn consume_token(
        &self,
        kind: TokenKind,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>, InfraError> {
        self.inner.consume_token(kind, hash, now).await
    }
}

impl<S: MfaRepository> MfaRepository for CachedStore<S> {
    async fn begin_totp(&self, user: UserId, sealed_secret: &str, now: DateTime<Utc>) -> Result<bool, InfraError> {
        self.inner.begin_totp(user, sealed_secret, now).await
    }

    async fn totp(&self, user: UserId) -> Result<Option<TotpEnrolment>, InfraError> {
        self.inner.totp(user).await
    }

    async fn confirm_totp(
        &self,
        user: UserId,
        step: i64,
        recovery_codes: &[TokenHash],
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let result = self.inner.confirm_totp(user, step, recovery_codes, now).await;
        self.forget_user(user);
        result
    }

    async fn use_totp_step(&self, user: UserId, step: i64) -> Result<bool, InfraError> {
        self.inner.use_totp_step(user, step).await
    }

    async fn use_recovery_code(&self, user: UserId, code: &TokenHash, now: DateTime<Utc>) -> Result<bool, InfraError> {
        self.inner.use_recovery_code(user, code, now).await
    }

    async fn recovery_codes_left(&self, user: UserId) -> Result<u32, InfraError> {
        self.inner.recovery_codes_left(user).await
    }

    async fn disable_totp(&self, user: UserId) -> Result<(), InfraError> {
        let result = self.inner.disable_totp(user).await;
        self.forget_user(user);
        result
    }
}

impl<S: EventRepository> EventRepository for CachedStore<S> {
    async fn record_event(&self, event: &SecurityEvent) -> Result<(), InfraError> {
        self.inner.record_event(event).await
    }

    async fn events(
        &self,
        user: UserId,
        before: Option<EventId>,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, InfraError> {
        self.inner.events(user, before, limit).await
    }
}

impl<S: ApiKeyRepository> ApiKeyRepository for CachedStore<S> {
    async fn create_api_key(&self, key: &ApiKey) -> Result<(), InfraError> {
        self.inner.create_api_key(key).await?;
        // A cached "unknown" for this public id must not outlive its creation.
        self.caches.forget_key(&key.public_id);
        Ok(())
    }

    async fn api_key_by_public_id(&self, public_id: &str) -> Result<Option<ApiKey>, InfraError> {
        if let Some(key) = self.caches.keys.get(public_id) {
            return Ok(key);
        }
        let seen = self.caches.generation();
        let key = self.inner.api_key_by_public_id(public_id).await?;
        self.caches
            .insert_if_current(&self.caches.keys, seen, public_id.to_owned(), key.clone());
        Ok(key)
    }

    async fn api_key(&self, user: UserId, id: ApiKeyId) -> Result<Option<ApiKey>, InfraError> {
        self.inner.api_key(user, id).await
    }

    async fn api_keys(&self, user: UserId) -> Result<Vec<ApiKey>, InfraError> {
        self.inner.api_keys(user).await
    }

    async fn revoke_api_key(&self, user: UserId, id: ApiKeyId, now: DateTime<Utc>) -> Result<bool, InfraError> {
        let revoked = self.inner.revoke_api_key(user, id, now).await;
        self.caches.forget_all_keys();
        revoked
    }

    async fn rotate_api_key(
        &self,
        user: UserId,
        old: ApiKeyId,
        replacement: &ApiKey,
        now: DateTime<Utc>,
    ) -> Result<bool, InfraError> {
        let rotated = self.inner.rotate_api_key(user, old, replacement, now).await;
        self.caches.forget_all_keys();
        rotated
    }

    async fn record_api_key_use(&self, uses: &[(ApiKeyId, DateTime<Utc>)]) -> Result<(), InfraError> {
        self.inner.record_api_key_use(uses).await
    }
}

impl<S: InvalidationFeed> InvalidationFeed for CachedStore<S> {
    async fn invalidations_since(&self, cursor: i64) -> Result<(i64, Vec<Invalidation>), InfraError> {
        self.inner.invalidations_since(cursor).await
    }

    async fn latest_invalidation(&self) -> Result<i64, InfraError> {
        self.inner.latest_invalidation().await
    }
}

/// Reads the invalidation feed every [`POLL_INTERVAL`] and applies it to
/// the caches, until the returned handle is aborted.
///
/// The feed's position is read before this returns, so call it before the
/// caches can fill (before serving): a change committed after that point is
/// applied even if its credential was cached before the first poll. If the
/// position cannot be read now, the caches are emptied once it can.
pub async fn spawn_invalidation_poller<S>(store: CachedStore<S>) -> tokio::task::JoinHandle<()>
where
    S: InvalidationFeed + Clone + 'static,
{
    let start = store.inner.latest_invalidation().await;
    if let Err(error) = &start {
        tracing::warn!(%error, "cannot read the invalidation feed; caches emptied until it answers");
    }
    tokio::spawn(async move {
        let mut failing = start.is_err();
        let mut cursor = start.ok();
        loop {
            tokio::time::sleep(POLL_INTERVAL).await;
            let result = match cursor {
                None => store
                    .inner
                    .latest_invalidation()
                    .await
                    .map(|latest| (latest, Vec::new())),
                Some(cursor) => store.inner.invalidations_since(cursor).await,
            };
            match result {
                Ok((next, invalidations)) => {
                    if failing {
                        // What changed while the feed was unreadable is unknown.
                        store.caches.clear();
                        tracing::info!("the invalidation feed answers again");
                        failing = false;
                    }
                    for invalidation in &invalidations {
                        store.caches.apply(invalidation);
                    }
                    cursor = Some(next);
                }
                Err(error) => {
                    store.caches.clear();
                    if !failing {
                        tracing::warn!(%error, "cannot read the invalidation feed; caches emptied");
                    }
                    failing = true;
                }
            }
        }
    })
}

/// A token signer that remembers verified tokens until they expire.
pub struct CachedSigner<T> {
    inner: T,
    verified: TtlCache<[u8; 32], AccessClaims>,
}

impl<T> CachedSigner<T> {
    /// Wraps a signer; entries live at most `max_ttl` (the access token lifetime).
    pub fn new(inner: T, max_ttl: Duration) -> Self {
        Self {
            inner,
            verified: TtlCache::new(CACHE_CAPACITY, max_ttl),
        }
    }

    /// The signer underneath.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: TokenSigner> TokenSigner for CachedSigner<T> {
    fn sign(&self, claims: &AccessClaims) -> Result<String, InfraError> {
        self.inner.sign(claims)
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<AccessClaims, TokenVerifyError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&key) {
            // No leeway: the cache never outlives `exp`.
            return if now >= claims.expires_at {
                Err(TokenVerifyError::Expired)
            } else {
                Ok(claims)
            };
        }
        let claims = self.inner.verify(token, now)?;
        self.verified.insert(key, claims.clone());
        Ok(claims)
    }
}

impl<S: convosphere_domain::ports::OAuthRepository> convosphere_domain::ports::OAuthRepository for CachedStore<S> {
    async fn save_pending_login(&self, pending: &convosphere_domain::oauth::PendingLogin) -> Result<(), InfraError> {
        self.inner.save_pending_login(pending).await
    }

    async fn take_pending_login(
        &self,
        state: &TokenHash,
    ) -> Result<Option<convosphere_domain::oauth::PendingLogin>, InfraError> {
        self.inner.take_pending_login(state).await
    }

    async fn identity_owner(
        &self,
        provider: convosphere_domain::oauth::Provider,
        subject: &str,
    ) -> Result<Option<UserId>, InfraError> {
        self.inner.identity_owner(provider, subject).await
    }

    async fn link_identity(
        &self,
        identity: &convosphere_domain::oauth::LinkedIdentity,
    ) -> Result<convosphere_domain::oauth::LinkOutcome, InfraError> {
        // Linking may verify the address and drop the password.
        let result = self.inner.link_identity(identity).await;
        self.forget_user(identity.user_id);
        result
    }

    async fn create_user_with_identity(
        &self,
        user: &NewUser,
        identity: &convosphere_domain::oauth::LinkedIdentity,
    ) -> Result<User, CreateUserError> {
        self.inner.create_user_with_identity(user, identity).await
    }

    async fn issue_login_code(
        &self,
        code: &TokenHash,
        user: UserId,
        provider: convosphere_domain::oauth::Provider,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<(), InfraError> {
        self.inner.issue_login_code(code, user, provider, now, expires_at).await
    }

    async fn login_code_owner(
        &self,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<(UserId, convosphere_domain::oauth::Provider)>, InfraError> {
        self.inner.login_code_owner(code, now).await
    }

    async fn consume_login_code(
        &self,
        code: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<(UserId, convosphere_domain::oauth::Provider)>, InfraError> {
        self.inner.consume_login_code(code, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_lives_until_its_ttl_and_not_after() {
        let cache = TtlCache::new(100, Duration::from_millis(50));
        cache.insert("a".to_owned(), 1);
        cache.insert("b".to_owned(), 2);
        assert_eq!(cache.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("b"), None);
        // A new insert starts a new lifetime.
        cache.insert("a".to_owned(), 3);
        assert_eq!(cache.get("a"), Some(3));
    }

    #[test]
    fn entries_are_forgotten_one_by_one_or_all_at_once() {
        let cache = TtlCache::new(100, Duration::from_secs(60));
        for (key, value) in [("a", 1), ("b", 2), ("c", 3)] {
            cache.insert(key.to_owned(), value);
        }
        cache.invalidate("a");
        assert_eq!((cache.get("a"), cache.get("b")), (None, Some(2)));
        cache.invalidate_all();
        assert_eq!((cache.get("b"), cache.get("c")), (None, None));
    }

    #[test]
    fn the_cache_stays_near_its_capacity_and_keeps_what_is_read_again() {
        let cache = TtlCache::new(1_000, Duration::from_secs(60));
        cache.insert(u64::MAX, "hot");
        for key in 0..50_000u64 {
            cache.insert(key, "once");
            // The hot entry is read as often as a real credential would be.
            if key % 10 == 0 {
                assert_eq!(cache.get(&u64::MAX), Some("hot"), "evicted after {key} one-off keys");
            }
        }
        assert!(cache.entries.len() <= 1_100, "{} entries", cache.entries.len());
    }

    #[test]
    fn callers_that_ask_at_once_share_one_value() {
        let cache = Arc::new(TtlCache::new(100, Duration::from_secs(60)));
        let made = Arc::new(AtomicU64::new(0));
        let values: Vec<u64> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (cache, made) = (Arc::clone(&cache), Arc::clone(&made));
                    scope.spawn(move || {
                        cache.get_with(7u8, || {
                            std::thread::sleep(Duration::from_millis(20));
                            made.fetch_add(1, Ordering::SeqCst) + 100
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(made.load(Ordering::SeqCst), 1);
        assert!(values.iter().all(|&v| v == 100), "{values:?}");
    }

    #[test]
    fn a_stamp_moves_when_its_user_or_credential_is_forgotten_and_only_then() {
        let store = CachedStore::new(());
        let id = |n: u128| uuid::Uuid::from_u128(n);
        let (user, other_user) = (UserId::from_uuid(id(1)), UserId::from_uuid(id(2)));
        let session = SessionId::from_uuid(id(3));
        let key = store.key_stamp(user, "AbCd1234");
        let by_session = store.session_stamp(user, session);
        // Another user's change leaves them (unless it shares a bucket).
        store.caches.forget_user(&other_user);
        let shares = |a: u64, b: u64| std::ptr::eq(store.caches.stamps.bucket(a), store.caches.stamps.bucket(b));
        if !shares(fold(id(1)), fold(id(2))) && !shares(fold_public_id("AbCd1234"), fold(id(2))) {
            assert_eq!(store.key_stamp(user, "AbCd1234"), key);
        }
        store.caches.forget_key("AbCd1234");
        assert_ne!(store.key_stamp(user, "AbCd1234"), key);
        assert_eq!(store.session_stamp(user, session).user, by_session.user);
        store.caches.forget_session(&session);
        assert_ne!(store.session_stamp(user, session), by_session);
        let before = store.key_stamp(user, "AbCd1234");
        store.caches.forget_user(&user);
        assert_ne!(store.key_stamp(user, "AbCd1234"), before);
        let before = store.key_stamp(user, "AbCd1234");
        store.caches.forget_all_keys();
        assert_ne!(store.key_stamp(user, "AbCd1234"), before);
        let before = store.key_stamp(user, "AbCd1234");
        store.caches.clear();
        assert_ne!(store.key_stamp(user, "AbCd1234"), before);
        // Two sets of caches never share a stamp.
        assert_ne!(
            CachedStore::new(()).key_stamp(user, "AbCd1234"),
            CachedStore::new(()).key_stamp(user, "AbCd1234")
        );
    }

    #[test]
    fn ids_spread_over_every_stamp_bucket() {
        let stamps = Stamps::new();
        let mut used = std::collections::HashSet::new();
        for _ in 0..20_000 {
            used.insert(stamps.bucket(fold(uuid::Uuid::new_v4())) as *const AtomicU64 as usize);
        }
        assert_eq!(used.len(), STAMP_BUCKETS);
    }

    /// Touches that wait until the test lets them through, counted.
    struct HeldTouches {
        touches: std::sync::atomic::AtomicUsize,
        gate: tokio::sync::Semaphore,
    }

    impl SessionRepository for HeldTouches {
        async fn create_session(
            &self,
            _: &Session,
            _: &TokenHash,
            _: u32,
            _: DateTime<Utc>,
        ) -> Result<Vec<SessionId>, InfraError> {
            unreachable!("the test only touches")
        }
        async fn rotate_refresh_token(
            &self,
            _: &TokenHash,
            _: &TokenHash,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<RefreshOutcome, InfraError> {
            unreachable!("the test only touches")
        }
        async fn session(&self, _: SessionId) -> Result<Option<Session>, InfraError> {
            unreachable!("the test only touches")
        }
        async fn touch_session(&self, _: SessionId, _: DateTime<Utc>) -> Result<(), InfraError> {
            self.touches.fetch_add(1, Ordering::SeqCst);
            self.gate.acquire().await.expect("the gate stays open").forget();
            Ok(())
        }
        async fn end_session(
            &self,
            _: UserId,
            _: SessionId,
            _: DateTime<Utc>,
            _: EndReason,
        ) -> Result<bool, InfraError> {
            unreachable!("the test only touches")
        }
        async fn end_user_sessions(
            &self,
            _: UserId,
            _: Option<SessionId>,
            _: DateTime<Utc>,
            _: EndReason,
        ) -> Result<Vec<SessionId>, InfraError> {
            unreachable!("the test only touches")
        }
        async fn active_sessions(
            &self,
            _: UserId,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<Vec<Session>, InfraError> {
            unreachable!("the test only touches")
        }
    }

    /// Starts a touch of `session` and returns once it is being written.
    async fn touch_in_flight(
        store: &Arc<CachedStore<HeldTouches>>,
        session: SessionId,
    ) -> tokio::task::JoinHandle<Result<(), InfraError>> {
        let before = store.inner().touches.load(Ordering::SeqCst);
        let touch = tokio::spawn({
            let store = Arc::clone(store);
            async move { store.touch_session(session, Utc::now()).await }
        });
        while store.inner().touches.load(Ordering::SeqCst) == before {
            tokio::task::yield_now().await;
        }
        touch
    }

    #[tokio::test]
    async fn a_busy_session_is_written_once_while_its_touch_is_in_flight() {
        let store = Arc::new(CachedStore::new(HeldTouches {
            touches: std::sync::atomic::AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
        }));
        let busy = SessionId::from_uuid(uuid::Uuid::from_u128(1));
        let touches = || store.inner().touches.load(Ordering::SeqCst);

        let first = touch_in_flight(&store, busy).await;
        for _ in 0..20 {
            store.touch_session(busy, Utc::now()).await.unwrap();
        }
        assert_eq!(touches(), 1, "the other requests did not write");
        // Another session is not held back by this one.
        let other = touch_in_flight(&store, SessionId::from_uuid(uuid::Uuid::from_u128(2))).await;
        assert_eq!(touches(), 2);

        store.inner().gate.add_permits(2);
        first.await.unwrap().unwrap();
        other.await.unwrap().unwrap();
        // Written: the next touch that is due writes again.
        let again = touch_in_flight(&store, busy).await;
        assert_eq!(touches(), 3);
        // Cancelled (the client went away): the claim goes with it.
        again.abort();
        assert!(again.await.unwrap_err().is_cancelled());
        let last = touch_in_flight(&store, busy).await;
        assert_eq!(touches(), 4);
        store.inner().gate.add_permits(1);
        last.await.unwrap().unwrap();
    }
}
