//! The cache of credentials with the domain's real callers, and its poller
//! against a feed the tests write.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Duration, Utc};
use convosphere_cache::{spawn_invalidation_poller, CallerCache, POLL_INTERVAL};
use convosphere_domain::api_key::{ApiKey, ApiKeyId, GeneratedApiKey};
use convosphere_domain::auth::keys::KeyPrincipal;
use convosphere_domain::auth::Caller;
use convosphere_domain::ports::{CredentialCache, CredentialKey, Invalidation, InvalidationFeed, Rng};
use convosphere_domain::{Email, InfraError, Plan, Principal, ScopeSet, SessionId, User, UserId};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct TestRng(AtomicU64);
impl Rng for TestRng {
    fn fill_bytes(&self, dest: &mut [u8]) {
        for byte in dest {
            *byte = self.0.fetch_add(1, Ordering::Relaxed) as u8;
        }
    }
}

fn user(n: u128) -> User {
    User {
        id: UserId::from_uuid(uuid::Uuid::from_u128(n)),
        name: "Ada".into(),
        email: Email::parse(&format!("ada{n}@example.com")).unwrap(),
        email_verified: true,
        password_hash: None,
        company: None,
        country: None,
        phone: None,
        plan: Plan::Free,
        mfa_enabled: false,
        suspended: false,
        failed_logins: 0,
        locked_until: None,
        created_at: Utc::now(),
    }
}

fn token_caller(user: User, session: u128) -> Caller {
    Caller::User(Arc::new(Principal {
        user,
        session_id: SessionId::from_uuid(uuid::Uuid::from_u128(session)),
        auth_time: Utc::now(),
        holds_until: DateTime::<Utc>::MAX_UTC,
    }))
}

fn key_caller(user: User) -> (Caller, String) {
    let rng = TestRng(AtomicU64::new(7));
    let generated = GeneratedApiKey::generate(&rng);
    let key = ApiKey {
        id: ApiKeyId::generate(Utc::now(), &rng),
        user_id: user.id,
        name: "ci".into(),
        public_id: generated.public_id.clone(),
        secret_hash: generated.secret_hash,
        scopes: ScopeSet::all(),
        created_at: Utc::now(),
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    (Caller::Key(Arc::new(KeyPrincipal { user, key })), generated.public_id)
}

fn remembered(cache: &CallerCache, credential: &str) -> bool {
    cache.get(&CredentialKey::of(credential), Utc::now()).is_some()
}

#[test]
fn a_caller_is_remembered_until_its_time_and_not_after() {
    let cache = CallerCache::new(100);
    let now = Utc::now();
    cache.insert(
        CredentialKey::of("token"),
        token_caller(user(1), 10),
        now + Duration::seconds(5),
    );
    let key = CredentialKey::of("token");
    assert!(cache.get(&key, now).is_some());
    assert!(cache.get(&key, now + Duration::seconds(5)).is_none());
    assert!(cache.get(&key, now).is_none(), "an expired entry is dropped when read");
}

#[test]
fn forgetting_a_user_a_session_or_a_key_forgets_the_callers_of_it() {
    let cache = CallerCache::new(100);
    let until = DateTime::<Utc>::MAX_UTC;
    let (ada, grace) = (user(1), user(2));
    let (key, public_id) = key_caller(ada.clone());
    cache.insert(CredentialKey::of("ada-token"), token_caller(ada.clone(), 10), until);
    cache.insert(
        CredentialKey::of("ada-other-token"),
        token_caller(ada.clone(), 11),
        until,
    );
    cache.insert(CredentialKey::of("ada-key"), key, until);
    cache.insert(CredentialKey::of("grace-token"), token_caller(grace, 20), until);

    cache.forget(&Invalidation::Session(SessionId::from_uuid(uuid::Uuid::from_u128(10))));
    assert!(!remembered(&cache, "ada-token"));
    assert!(remembered(&cache, "ada-other-token") && remembered(&cache, "ada-key"));

    cache.forget(&Invalidation::ApiKey(public_id));
    assert!(!remembered(&cache, "ada-key"));
    assert!(remembered(&cache, "ada-other-token"));

    cache.forget(&Invalidation::User(ada.id));
    assert!(!remembered(&cache, "ada-other-token"));
    assert!(remembered(&cache, "grace-token"), "another user's caller is kept");

    let before = cache.generation();
    cache.clear();
    assert!(!remembered(&cache, "grace-token"));
    assert_ne!(cache.generation(), before);
}

#[test]
fn every_forget_moves_the_generation() {
    let cache = CallerCache::new(100);
    let mut seen = cache.generation();
    for invalidation in [
        Invalidation::User(user(1).id),
        Invalidation::Session(SessionId::from_uuid(uuid::Uuid::from_u128(3))),
        Invalidation::ApiKey("AbCd1234".into()),
    ] {
        cache.forget(&invalidation);
        assert!(cache.generation() > seen, "{invalidation:?}");
        seen = cache.generation();
    }
}

#[test]
fn a_flood_of_one_off_credentials_does_not_evict_one_read_again() {
    let cache = CallerCache::new(1_000);
    let until = DateTime::<Utc>::MAX_UTC;
    cache.insert(CredentialKey::of("hot"), token_caller(user(1), 1), until);
    for n in 0..20_000u128 {
        cache.insert(
            CredentialKey::of(&format!("once{n}")),
            token_caller(user(2), n + 2),
            until,
        );
        if n % 10 == 0 {
            assert!(remembered(&cache, "hot"), "evicted after {n} one-off credentials");
        }
    }
    assert!(cache.len() <= 1_100, "{} entries", cache.len());
}

/// A feed the test appends to, that can be made to fail.
#[derive(Clone, Default)]
struct TestFeed {
    entries: Arc<Mutex<Vec<Invalidation>>>,
    down: Arc<AtomicBool>,
}

impl InvalidationFeed for TestFeed {
    async fn invalidations_since(&self, cursor: i64) -> Result<(i64, Vec<Invalidation>), InfraError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(InfraError::new("the feed is down"));
        }
        let entries = self.entries.lock().unwrap();
        let start = usize::try_from(cursor).unwrap();
        Ok((entries.len() as i64, entries[start..].to_vec()))
    }

    async fn latest_invalidation(&self) -> Result<i64, InfraError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(InfraError::new("the feed is down"));
        }
        Ok(self.entries.lock().unwrap().len() as i64)
    }
}

#[tokio::test]
async fn the_poller_forgets_what_the_feed_names_and_everything_while_it_is_down() {
    let feed = TestFeed::default();
    let cache = Arc::new(CallerCache::new(100));
    let until = DateTime::<Utc>::MAX_UTC;
    let poller = spawn_invalidation_poller(feed.clone(), Arc::clone(&cache)).await;
    cache.insert(CredentialKey::of("a"), token_caller(user(1), 10), until);
    cache.insert(CredentialKey::of("b"), token_caller(user(2), 20), until);
    feed.entries
        .lock()
        .unwrap()
        .push(Invalidation::Session(SessionId::from_uuid(uuid::Uuid::from_u128(10))));
    tokio::time::sleep(POLL_INTERVAL * 3).await;
    assert!(!remembered(&cache, "a"), "another instance's logout reached this cache");
    assert!(remembered(&cache, "b"));

    feed.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(POLL_INTERVAL * 3).await;
    assert!(!remembered(&cache, "b"), "an unreadable feed empties the cache");
    poller.abort();
}
